"""Home Assistant's MQTT discovery (issue 17, opt-in): each gate a device with a connectivity, a
last scan and an fps entity, published by the server from what its database knows."""
