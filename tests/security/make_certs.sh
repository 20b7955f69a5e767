#!/bin/sh
# make_certs.sh DIR — the test PKI, made with Debian's openssl (EC P-256, valid one day):
#   ca.pem ca.key             the cluster CA ("meshd test CA")
#   other-ca.pem other-ca.key a second, unrelated CA
#   server.{pem,key}          the coordinator: SAN DNS:localhost, IP:127.0.0.1; serial 0x1001
#   server2.{pem,key}         the same names, a new key; serial 0x1002 (rotation)
#   node-a.{pem,key}          a node: CN and DNS SAN node-a, URI SAN spiffe://meshd.test/node/node-a,
#                             IP:127.0.0.1 (its health port); serial 0x2001
#   node-a2.{pem,key}         node-a again, a new key; serial 0x2002 (rotation)
#   node-b.{pem,key}          node-b; serial 0x2003
#   operator.{pem,key}        an operator: CN operator, OU admin, URI spiffe://meshd.test/operator/alice
#   stranger.{pem,key}        CN and DNS SAN node-a, signed by the other CA
# Usage in docs/security.md follows the same steps. Exit status non-zero on any openssl failure.
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

ca() {  # ca NAME SUBJECT
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 1 -subj "$2" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    2>/dev/null
}

leaf() {  # leaf NAME CA SERIAL SUBJECT SAN EKU
  key "$1.key"
  openssl req -new -key "$1.key" -subj "$4" -out "$1.csr" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\nsubjectAltName=%s\n' \
    "$6" "$5" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -set_serial "$3" -days 1 \
    -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
  chmod 600 "$1.key"
}

ca ca "/O=meshd test/CN=meshd test CA"
ca other-ca "/O=someone else/CN=other CA"
leaf server ca 0x1001 "/O=meshd test/CN=meshd-coordinator" "DNS:localhost,IP:127.0.0.1" \
  "serverAuth,clientAuth"
leaf server2 ca 0x1002 "/O=meshd test/CN=meshd-coordinator" "DNS:localhost,IP:127.0.0.1" \
  "serverAuth,clientAuth"
leaf node-a ca 0x2001 "/O=meshd test/CN=node-a" \
  "DNS:node-a,URI:spiffe://meshd.test/node/node-a,IP:127.0.0.1" "clientAuth,serverAuth"
leaf node-a2 ca 0x2002 "/O=meshd test/CN=node-a" \
  "DNS:node-a,URI:spiffe://meshd.test/node/node-a,IP:127.0.0.1" "clientAuth,serverAuth"
leaf node-b ca 0x2003 "/O=meshd test/CN=node-b" \
  "DNS:node-b,URI:spiffe://meshd.test/node/node-b,IP:127.0.0.1" "clientAuth,serverAuth"
leaf operator ca 0x3001 "/O=meshd test/OU=admin/CN=operator" \
  "URI:spiffe://meshd.test/operator/alice" "clientAuth"
leaf stranger other-ca 0x4001 "/O=someone else/CN=node-a" "DNS:node-a,IP:127.0.0.1" \
  "clientAuth,serverAuth"
