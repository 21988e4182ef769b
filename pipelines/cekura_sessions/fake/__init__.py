"""The faithful fake Cekura API: generated data, a real HTTP server on loopback, fault switches."""
