"""Device implementations behind ``causal_rewards.torch_ops``: the vectorised PyTorch reference
(``reference``), the shared M x M epilogue (``epilogue``) and the fused Triton kernels (``triton_mmd``)."""
