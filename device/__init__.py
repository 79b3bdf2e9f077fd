"""The gate agent: camera, decoder, credentials, policy, indicator, journal and uplink."""
