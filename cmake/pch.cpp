// Translation unit that owns the precompiled <torch/torch.h> reused by every Torch target.
