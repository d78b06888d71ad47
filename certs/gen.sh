#!/usr/bin/env bash
# Development and test certificates ONLY: a throwaway CA and two localhost certificates it
# signed. Never use them outside a laptop or a test run. Regenerate: bash certs/gen.sh
set -euo pipefail
cd "$(dirname "$0")"
days=36500

openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days "$days" \
  -subj "/CN=sessiongate development CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

# Two leaf certificates for the same names, so tests can watch a reload swap them.
for name in localhost localhost-next; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name.key" -out "$name.csr" \
    -subj "/CN=$name"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" -out "$name.pem" \
    -extfile <(printf "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth")
  rm "$name.csr"
done
rm -f ca.srl
