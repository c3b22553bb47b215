"""All tables, grouped by domain. Import from here so metadata is complete."""
from app.models.org import ApiToken, Organisation, User, UserAlias
from app.models.mail import FolderState, Mailbox, SyncIssue
from app.models.timeline import Company, Contact, ContactAddress, Interaction, InteractionSource, Participant
from sqlmodel import SQLModel

metadata = SQLModel.metadata

__all__ = [
    "ApiToken", "Organisation", "User", "UserAlias",
    "FolderState", "Mailbox", "SyncIssue",
    "Company", "Contact", "ContactAddress", "Interaction", "InteractionSource", "Participant",
    "metadata",
]
