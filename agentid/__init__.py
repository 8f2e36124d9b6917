"""agentid: first-class identities for AI agents.

    key = agentid.AgentKey.generate()
    async with await agentid.Orchestrator.connect(tenant=..., orchestrator_id=..., spiffe_id=...,
                                                 key=orchestrator_key) as orch:
        identity = await orch.spawn(key, purpose="loan-decisions", model={...}, tier="standard",
                                    data_class="confidential", controller={"type": "user", "id": "alice"})
"""

from agentid.agent import Agent
from agentid.dpop import DpopAuth
from agentid.verifier import VerifiedRequest, Verifier
from agentid.deployment import Deployment
from agentid.keys import AgentKey
from agentid.orchestrator import Orchestrator
from contracts.registration import AgentIdentity, Controller, Model, Tool
from shared.errors import AgentidError

__all__ = ["Agent", "AgentIdentity", "AgentKey", "DpopAuth", "VerifiedRequest", "Verifier", "AgentidError", "Controller", "Deployment", "Model",
           "Orchestrator", "Tool"]
__version__ = "0.1.0"
