# syntax=docker/dockerfile:1
# pd-relay container image:  docker build -t pd-relay:0.1.0 .
#
# Three stages, so that the image holds only what runs:
#   build    compiles TypeScript to dist/ (dev dependencies, no native addon needed for tsc);
#   deps     installs production dependencies; better-sqlite3 compiles its addon here, against
#            this image's Node, with the toolchain that stays behind in this stage;
#   runtime  node + bin/ + dist/ + rules/ + package.json + production node_modules, non-root.
# Both install layers depend on the lockfile only, so a source change rebuilds neither.

ARG NODE_IMAGE=node:22-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src/ src/
RUN npm run build

FROM ${NODE_IMAGE} AS deps
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# `npm ci` runs the package's prepare script; with TypeScript absent (--omit=dev) it exits 0
# without building, and dist/ comes from the build stage.
COPY scripts/prepare.mjs scripts/
# Compile better-sqlite3 rather than download a prebuilt binary: the addon matches this exact
# Node, and the build needs nothing from outside the npm registry.
ENV npm_config_build_from_source=true
RUN npm ci --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
# A fixed numeric user, so Kubernetes' runAsNonRoot can check it (k8s/base/statefulset.yaml runs
# as the same uid/gid). npm and corepack are removed: nothing at run time uses them.
RUN groupadd --system --gid 10001 pdrelay \
 && useradd --system --uid 10001 --gid pdrelay --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin pdrelay \
 && rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
 && mkdir -p /etc/pd-relay /var/lib/pd-relay /app/data \
 && chown pdrelay:pdrelay /var/lib/pd-relay /app/data
WORKDIR /app
# Application files stay owned by root: the relay cannot modify its own code. Writable: the spool
# (/var/lib/pd-relay, a volume in Kubernetes) and ./data for a zero-config `serve`.
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY bin/ ./bin/
COPY rules/ ./rules/
USER 10001:10001
EXPOSE 8080 9464
# Node runs as PID 1 without an init: PID 1 gets no default signal handling, but the relay installs
# its own SIGTERM/SIGINT handlers (stop accepting, drain, exit 0), and it starts no child
# processes, so there are no zombies to reap. `docker run --init` adds tini if ever needed.
ENTRYPOINT ["node", "/app/bin/pd-relay.js"]
CMD ["serve", "--config", "/etc/pd-relay/config.yaml"]
