#!/bin/sh
# A local CA and a PostgreSQL server certificate it signed, for the compose aws-like stack's TLS
# verify-full path (Aurora's, with Amazon's RDS CA bundle in the CA's place).
#
#   postgres-tls.sh SERVER_DIR CA_DIR
#     SERVER_DIR gets server.crt and server.key (0600; chowned to $TLS_KEY_OWNER when set, the user the
#     server runs as); CA_DIR gets ca.crt only, the file clients verify against.
#   TLS_SERVER_NAMES  the names the certificate is valid for, comma-separated (default: postgres, the
#                     compose service name clients connect to; verify-full checks it)
#
# Nothing of this is committed: compose runs it in a one-shot container at `up` (the postgres-tls
# service), into named volumes. The CA's private key lives only in a temporary directory and is
# deleted once it signed the server certificate, so nothing can mint another certificate this CA
# vouches for. An existing pair is kept (a restart changes nothing); `docker compose down -v` drops it.
# POSIX sh: it runs in the postgres image, whose /bin/sh is dash.
set -eu

server_dir=${1:?usage: postgres-tls.sh SERVER_DIR CA_DIR}
ca_dir=${2:?usage: postgres-tls.sh SERVER_DIR CA_DIR}
names=${TLS_SERVER_NAMES:-postgres}

if [ -s "$server_dir/server.crt" ] && [ -s "$server_dir/server.key" ] && [ -s "$ca_dir/ca.crt" ]; then
  echo "postgres-tls: keeping the certificate in $server_dir"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077

# subjectAltName: every name as DNS, so verify-full matches the host of the DSN.
san=$(printf '%s' "$names" | sed 's/[[:space:]]//g; s/^/DNS:/; s/,/,DNS:/g')
cn=${names%%,*}

openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -days 825 \
  -subj "/CN=cqrs-platform local CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" \
  -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 -subj "/CN=$cn" \
  -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
cat >"$work/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$san
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
  -days 825 -sha256 -extfile "$work/server.ext" -out "$work/server.crt" 2>/dev/null

mkdir -p "$server_dir" "$ca_dir"
# Traversable by the server's user and the services' (the umask above is for the keys).
chmod 0755 "$server_dir" "$ca_dir"
# PostgreSQL refuses a key file others can read; clients need only the CA certificate.
install -m 0600 "$work/server.key" "$server_dir/server.key"
install -m 0644 "$work/server.crt" "$server_dir/server.crt"
install -m 0644 "$work/ca.crt" "$ca_dir/ca.crt"
if [ -n "${TLS_KEY_OWNER:-}" ]; then
  chown "$TLS_KEY_OWNER" "$server_dir/server.key" "$server_dir/server.crt"
fi
echo "postgres-tls: new CA and server certificate for $san (the CA key is discarded)"
