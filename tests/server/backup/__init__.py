"""`gatescan backup` and `gatescan restore`: a backed-up installation restored on a new folder
takes its enrolled gates back as they are."""
