"""Frame -> the exact bytes of every QR code in it: `Decoder` and `DecodedCode` (base.py), the
backends (zbar.py, zxing.py, ensemble.py with preprocess.py), and `make_decoder` (backends.py)."""
