"""The site policy a gate holds (protocol/site_policy.py is the contract): the snapshot it decides
with (held.py), its files in the data dir (files.py), and the holder that applies what MQTT
brings (holder.py)."""
