"""Device implementations behind the torch entry points (``torch_ops``): the checked input of one call
(``problem``), kernels in units of the smallest bandwidth (``scaling``), the vectorised PyTorch
reference (``reference``), the M x M epilogue shared by both device paths (``epilogue``), and the
fused Triton kernels (``triton_mmd`` host side, ``triton_kernels``)."""
