"""Every message on the Deployment Engine starts a ClientApp process (issue 16): the handlers that do
not train (hello, budget, ledger, the SecAgg+ stages) must not pay for torch or Opacus. Importing
the ClientApp module loads neither; only the train handler imports the training code."""

from __future__ import annotations

import subprocess
import sys

CHECK = ("import sys, node.client_app; "
         "heavy = sorted(m for m in ('torch', 'opacus', 'sklearn', 'opendp') if m in sys.modules); "
         "print(','.join(heavy))")


def test_clientapp_module_imports_no_torch_or_opacus():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "", f"node.client_app imports {out.stdout.strip()} at module level"
