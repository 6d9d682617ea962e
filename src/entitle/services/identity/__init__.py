"""Who a person is: accounts, sign-in, tokens, passwords, Apple and Google identities, imports."""
