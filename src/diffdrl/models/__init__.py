"""Networks: encoder, token bank, denoiser, and the models built from them."""
