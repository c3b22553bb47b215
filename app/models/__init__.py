"""All tables, grouped by domain. Import from here so metadata is complete."""

from sqlmodel import SQLModel

from app.models.deals import (
    Deal,
    DealContact,
    DealStageChange,
    DealThread,
    DealVisibility,
    Pipeline,
    PipelineStage,
    StageKind,
)
from app.models.duplicates import ContactMerge, DuplicateCandidate, DuplicateDismissal, DuplicateScan, MergeState
from app.models.followup import FollowUp, FollowUpKind, FollowUpStatus
from app.models.mail import (
    FolderState,
    GoogleWorkspace,
    GraphSubscription,
    M365Tenant,
    Mailbox,
    MailboxStatus,
    SkippedItem,
    SyncIssue,
    SyncStage,
)
from app.models.org import (
    ApiToken,
    AuditEvent,
    ConsoleSession,
    ErasedPerson,
    ExclusionRule,
    Organisation,
    User,
    UserAlias,
)
from app.models.segments import Segment
from app.models.timeline import (
    AnswerSample,
    Company,
    Contact,
    ContactAddress,
    ContactColleague,
    ContactStats,
    Interaction,
    InteractionKind,
    InteractionSource,
    Participant,
    RepDay,
    SummaryCheck,
)

metadata = SQLModel.metadata

__all__ = [
    "ContactMerge",
    "DuplicateCandidate",
    "DuplicateDismissal",
    "DuplicateScan",
    "MergeState",
    "ApiToken",
    "AuditEvent",
    "ConsoleSession",
    "ErasedPerson",
    "ExclusionRule",
    "Organisation",
    "User",
    "UserAlias",
    "FollowUp",
    "FollowUpKind",
    "FollowUpStatus",
    "FolderState",
    "GraphSubscription",
    "M365Tenant",
    "GoogleWorkspace",
    "Mailbox",
    "MailboxStatus",
    "Segment",
    "SkippedItem",
    "SyncIssue",
    "SyncStage",
    "Company",
    "Contact",
    "ContactAddress",
    "ContactColleague",
    "ContactStats",
    "SummaryCheck",
    "Interaction",
    "InteractionKind",
    "InteractionSource",
    "Participant",
    "RepDay",
    "AnswerSample",
    "Deal",
    "DealContact",
    "DealStageChange",
    "DealThread",
    "DealVisibility",
    "Pipeline",
    "PipelineStage",
    "StageKind",
    "metadata",
]
