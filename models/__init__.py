"""Model side of trimodal: configs, media decoding with limits, features, encoders."""
