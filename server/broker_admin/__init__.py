"""Gates' broker accounts, changed at run time (Mosquitto's dynamic security plugin)."""
