"""The floor for a kubelet exec plugin in Python: read the request, write a JSON answer.

Nothing else: no cache, no AWS. ``bench/plugin.py`` times ecrcred's cache hit against this.
"""

import json
import sys

request = json.loads(sys.stdin.buffer.read())
answer = {
    "kind": "CredentialProviderResponse",
    "apiVersion": request["apiVersion"],
    "cacheKeyType": "Registry",
    "cacheDuration": "1h0m0s",
    "auth": {request["image"].split("/", 1)[0]: {"username": "AWS", "password": "x"}},
}
sys.stdout.write(json.dumps(answer) + "\n")
