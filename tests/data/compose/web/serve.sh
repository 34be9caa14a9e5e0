# web: a page made of the env file's GREETING and what backend left in the
# shared volume, served by busybox httpd on port 8080.
mkdir -p /www
printf '%s from %s\n' "$GREETING" "$(cat /data/from-backend)" > /www/index.html
echo "web serving"
exec httpd -f -p 8080 -h /www
