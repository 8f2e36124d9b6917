"""The HTTP edge: standard OAuth, JOSE, VC and SPIFFE clients talk HTTP here; inside, the bus."""
