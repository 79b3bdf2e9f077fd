"""Where frames come from: the `FrameSource` protocol (source.py) and its backends, one module
each (picamera2, opencv, replay, memory), imported by name so that a PC never imports picamera2."""
