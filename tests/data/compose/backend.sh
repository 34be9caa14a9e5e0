# backend: leaves a mark in the shared volume, becomes healthy a moment
# after it starts (so that web's start really waits for the check), then
# answers "pong" to every connection on port 7000.
echo backend-was-here > /shared/from-backend
sleep 1
touch /tmp/ready
echo "backend ready"
exec nc -ll -p 7000 -e echo pong
