// Compile the project's own Solidity sources with solc-js and print the
// standard-JSON output (abi + bytecode per contract) on stdout.
//   node tests/chain/compile.js contracts/TestUSD.sol contracts/WitnessTransfer.sol
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const sources = {};
for (const file of process.argv.slice(2)) {
  sources[path.basename(file)] = { content: fs.readFileSync(file, "utf8") };
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  for (const e of errors) process.stderr.write(e.formattedMessage + "\n");
  process.exit(1);
}
const contracts = {};
for (const file of Object.keys(output.contracts || {})) {
  for (const [name, c] of Object.entries(output.contracts[file])) {
    contracts[name] = {
      abi: c.abi,
      bytecode: "0x" + c.evm.bytecode.object,
      deployedBytecode: "0x" + c.evm.deployedBytecode.object,
    };
  }
}
process.stdout.write(JSON.stringify({ compiler: solc.version(), contracts }));
