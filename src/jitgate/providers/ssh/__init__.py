"""OpenSSH certificates: wire format, our own certificate signer, the CA key store, KRLs, the provider."""
