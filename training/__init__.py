"""Training side of trimodal: the SynthAV corpus generator, datasets, losses, trainer, evaluation."""
