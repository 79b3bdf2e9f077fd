"""Tests of device/diagnosis/."""
