"""`lic bench`: rate-distortion and speed of lic models against classical codecs, from real bytes."""
