// node-media-server for tests/bench/capacity.sh: RTMP on the first port,
// HTTP-FLV on the second, GOP cache on (as arcly and nginx-rtmp start
// players), logs to errors only.
//   node run.js RTMP_PORT HTTP_PORT
const NodeMediaServer = require('node-media-server');
const [rtmp, http] = process.argv.slice(2).map(Number);
new NodeMediaServer({
  logType: 1,
  rtmp: { port: rtmp, chunk_size: 4096, gop_cache: true, ping: 30, ping_timeout: 60 },
  http: { port: http, allow_origin: '*', mediaroot: require('os').tmpdir() + '/arcly-nms-media' },
}).run();
