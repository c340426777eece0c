// server.mjs PORT - run CongoDB (a MongoDB-wire-compatible server, in memory) on
// 127.0.0.1:PORT for the event log's tests; prints "listening PORT" when ready
// and runs until killed.
import { CongoServer } from '@push.rocks/smartmongo/dist_ts/congodb/index.js';

const port = Number(process.argv[2] || 27117);
const server = new CongoServer({ host: '127.0.0.1', port, storage: 'memory' });
await server.start();
console.log(`listening ${port}`);
const stop = async () => { await server.stop(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
