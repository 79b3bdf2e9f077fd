"""A gate's SD card, as `gatescan provision` writes it: the Raspberry Pi OS release it targets
(target.py), what the technician gives (inputs.py), the cloud-init files and their checks
(cloud_config.py, network_config.py), the bundle of the gatescan wheel and its constraints
(bundle.py), and the boot partition written as a whole (boot_files.py)."""
