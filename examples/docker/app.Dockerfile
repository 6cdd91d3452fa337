# syntax=docker/dockerfile:1
# The example app (examples/app).  From the repository root:
#   docker build -f examples/docker/app.Dockerfile -t nginx-scale-app .
FROM node:20-bookworm-slim
WORKDIR /app
COPY examples/app/package.json examples/app/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY examples/app/server.js ./
ENV HOST=0.0.0.0 PORT=3000 NODE_ENV=production
USER node
EXPOSE 3000
# one X-Instance-Id per replica: the container's host name unless set
CMD ["sh", "-c", "INSTANCE_ID=${INSTANCE_ID:-$(hostname)} exec node server.js"]
