"""TensorIR schedule templates, one module per operator family (each imports TVM when used)."""
