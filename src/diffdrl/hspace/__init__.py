"""h-space (U-Net bottleneck) and prior-side methods on our own denoisers (issue 20)."""
