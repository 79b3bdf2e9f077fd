"""The dashboard's two languages: Vietnamese (vi.py, the default) and English (en.py), and the
translator, date formats and language choice (translate.py)."""
