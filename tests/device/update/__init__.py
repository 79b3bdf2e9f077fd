"""Tests of device/update/: the gate's updater."""
