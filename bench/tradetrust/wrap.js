// Times OpenAttestation's wrapDocuments (@tradetrust-tt/tradetrust, OA v2, synchronous) on the corridor document.
// Usage: node wrap.js CORRIDOR_JSON COUNT   -> prints {"documents": N, "seconds": S}
// Each document is wrapped on its own (one wrapDocuments call per document), as an eBL is issued one at a time;
// the DCSA document is carried as the OA document's data, with the fields OA v2 requires for a transferable record
// (a $template, an issuer with a token registry and a DNS-TXT identity proof). wrapDocuments validates the document
// against the OA v2 schema, salts every field and hashes the result into a Merkle root: OA's issuance step before
// the on-chain minting, which is not timed here.
"use strict";
const fs = require("fs");
const { wrapDocuments } = require("@tradetrust-tt/tradetrust");

const corridor = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const count = Number(process.argv[3] || 1000);

function oaDocument(i) {
  return {
    $template: { name: "DCSA_TRANSPORT_DOCUMENT", type: "EMBEDDED_RENDERER", url: "https://renderer.ebl.example" },
    issuers: [
      {
        name: "Yuxin Rail-Sea Forwarding Co., Ltd.",
        tokenRegistry: "0x142Ca30e3b78A840a82192529cA047ED759a6F7e",
        identityProof: { type: "DNS-TXT", location: "yuxin.ebl.example" },
      },
    ],
    ...corridor,
    transportDocumentReference: `TT${String(i).padStart(10, "0")}`,
  };
}

const documents = Array.from({ length: count }, (_, i) => oaDocument(i));
wrapDocuments([oaDocument(-1)]); // warm up (schema compilation)
const began = process.hrtime.bigint();
for (const document of documents) {
  wrapDocuments([document]);
}
const seconds = Number(process.hrtime.bigint() - began) / 1e9;
console.log(JSON.stringify({ documents: count, seconds }));
