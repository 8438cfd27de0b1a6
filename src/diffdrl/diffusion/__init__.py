"""Beta schedules, forward noising and the denoising loss; samplers come in their own modules."""
