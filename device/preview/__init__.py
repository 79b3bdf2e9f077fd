"""The aim-and-focus preview (issue 17): the focus score, the annotated picture and its JPEG
under a byte budget, the tap on the frame loop, the server's requests and the local socket of
`gatescan preview`."""
