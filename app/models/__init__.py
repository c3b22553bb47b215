"""All tables, grouped by domain. Import from here so metadata is complete."""
from app.models.org import (ApiToken, AuditEvent, ConsoleSession, ErasedPerson, ExclusionRule, Organisation, User,
                            UserAlias)
from app.models.mail import FolderState, GraphSubscription, M365Tenant, Mailbox, MailboxStatus, SyncIssue, SyncStage
from app.models.timeline import (Company, Contact, ContactAddress, ContactColleague, ContactStats, Interaction,
                                 InteractionKind, InteractionSource, Participant)
from sqlmodel import SQLModel

metadata = SQLModel.metadata

__all__ = [
    "ApiToken", "AuditEvent", "ConsoleSession", "ErasedPerson", "ExclusionRule", "Organisation", "User", "UserAlias",
    "FolderState", "GraphSubscription", "M365Tenant", "Mailbox", "MailboxStatus", "SyncIssue", "SyncStage",
    "Company", "Contact", "ContactAddress", "ContactColleague", "ContactStats", "Interaction", "InteractionKind",
    "InteractionSource", "Participant",
    "metadata",
]
