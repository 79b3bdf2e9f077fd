"""The aim-and-focus preview on the dashboard (issue 17): the relay that holds each gate's
latest frame in memory only, and its routes."""
