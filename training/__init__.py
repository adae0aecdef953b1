"""Training side of trimodal: SynthAV generator, datasets, losses, trainer, evaluation."""
