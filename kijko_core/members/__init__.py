"""Project members and their invitations (contract §2.2.3, §2.2.4): models / repository /
service like projects, plus the invitation links (public preview, accept)."""
