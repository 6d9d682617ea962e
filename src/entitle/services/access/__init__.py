"""What a person may use: store subscriptions, purchases, grants, trials, balances and the answer."""
