"""What tests, benchmarks and the demo share, shipped with the package as gpiozero ships its mock
pins: generated codes and events (samples.py), generated gate frames (gate_frames.py), a private
Mosquitto (broker.py), the collector as its own process (collector_process.py), the qr-photos set
(qr_photos.py), and a stand-in for picamera2 (fake_picamera2.py, fake_buffers.py) with the camera
modules it plays (camera_modules.py)."""
