"""Tests of device/enrolment/."""
