"""Users, API tokens, sessions, CSRF and secret encryption.

passwords.py  Argon2id hashing.         crypto.py   endpoint API keys at rest (AES-GCM, key ids).
tokens.py     random tokens and hashes. csrf.py     CSRF tokens and the Origin check.
"""
