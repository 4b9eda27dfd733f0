"""Files in and out: scans (NIfTI, DICOM, NumPy), masks and complex arrays (k-space, coil maps), atomic writes,
PNG pictures and the embedded brain that ships with the package. Nothing here solves anything."""
