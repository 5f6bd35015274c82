"""The workspace: one lifelong run on disk, its typed state, its checkpoints, its store and bank."""
from agent.workspace.state import PHASES, ForgetRecord, RunRecord, SourceRecord, StreamEntry, WorkspaceState
from agent.workspace.workspace import Workspace, default_workspace_path

__all__ = ["PHASES", "ForgetRecord", "RunRecord", "SourceRecord", "StreamEntry", "Workspace", "WorkspaceState",
           "default_workspace_path"]
