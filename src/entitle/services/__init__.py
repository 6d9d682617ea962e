"""Use-cases over one AsyncSession. Services flush but never commit: the caller owns the transaction."""
