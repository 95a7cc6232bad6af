"""The words of the public email pages (unsubscribe, preferences), in each language a member
may have (`loyalty.models.LANGUAGES`), and the kinds' names as members read them. The portal's
preference page reuses them."""

from __future__ import annotations

from .email_kinds import EmailKind

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "unsubscribe_title": "Unsubscribe",
        "unsubscribe_question": "Stop receiving “{kind}” emails from {program}?",
        "unsubscribe_button": "Unsubscribe",
        "unsubscribe_all_button": "Unsubscribe from all offers and news",
        "unsubscribe_address": "Emails to {email}",
        "done": "Done: you will no longer receive “{kind}” emails from {program}.",
        "done_all": "Done: you will no longer receive offers and news from {program}.",
        "already": "You are already unsubscribed from “{kind}” emails.",
        "choose": "Choose which emails you receive",
        "preferences_title": "Email preferences",
        "preferences_intro": "Choose the emails {program} sends you at {email}.",
        "group_account": "About your account and your points",
        "group_offers": "Offers and news",
        "no_consent": "You have not agreed to receive offers: these are not sent to you.",
        "always": "Sign-in links are always sent: you ask for them.",
        "save": "Save my choices",
        "saved": "Your choices are saved.",
        "invalid_title": "This link is not valid",
        "invalid_text": (
            "It may be damaged or incomplete. Copy the whole link from the email, or reply to the email "
            "to be removed from the list."
        ),
    },
    "fr": {
        "unsubscribe_title": "Se désabonner",
        "unsubscribe_question": "Ne plus recevoir les e-mails « {kind} » de {program} ?",
        "unsubscribe_button": "Me désabonner",
        "unsubscribe_all_button": "Me désabonner de toutes les offres et actualités",
        "unsubscribe_address": "E-mails envoyés à {email}",
        "done": "C'est fait : vous ne recevrez plus les e-mails « {kind} » de {program}.",
        "done_all": "C'est fait : vous ne recevrez plus les offres et actualités de {program}.",
        "already": "Vous êtes déjà désabonné(e) des e-mails « {kind} ».",
        "choose": "Choisir les e-mails que je reçois",
        "preferences_title": "Préférences e-mail",
        "preferences_intro": "Choisissez les e-mails que {program} vous envoie à {email}.",
        "group_account": "Votre compte et vos points",
        "group_offers": "Offres et actualités",
        "no_consent": "Vous n'avez pas accepté de recevoir des offres : elles ne vous sont pas envoyées.",
        "always": "Les liens de connexion sont toujours envoyés : c'est vous qui les demandez.",
        "save": "Enregistrer mes choix",
        "saved": "Vos choix sont enregistrés.",
        "invalid_title": "Ce lien n'est pas valide",
        "invalid_text": (
            "Il est peut-être abîmé ou incomplet. Copiez le lien entier depuis l'e-mail, ou répondez à l'e-mail "
            "pour être retiré(e) de la liste."
        ),
    },
}

KIND_NAMES: dict[str, dict[str, str]] = {
    "en": {
        EmailKind.WELCOME: "Welcome",
        EmailKind.POINTS_EARNED: "Points earned",
        EmailKind.POINTS_ADDED: "Points added",
        EmailKind.POINTS_REMOVED: "Points removed",
        EmailKind.REWARD_REDEEMED: "Your rewards and coupons",
        EmailKind.POINTS_EXPIRING: "Points about to expire",
        EmailKind.POINTS_REMINDER: "Points statement",
        EmailKind.REWARD_WITHIN_REACH: "Rewards within reach",
        EmailKind.TIER_UPGRADED: "Tier upgrades",
        EmailKind.TIER_DOWNGRADED: "Tier downgrades",
        EmailKind.TIER_AT_RISK: "Tier reminders",
        EmailKind.BIRTHDAY: "Birthday wishes",
        EmailKind.REFERRAL_REWARDED: "Referral rewards",
        EmailKind.CARD_CLAIMED: "Card claimed",
        EmailKind.LOGIN_LINK: "Sign-in links",
        EmailKind.DELETION_CONFIRMED: "Data deletion confirmed",
        EmailKind.DELETION_DECLINED: "Data deletion declined",
        EmailKind.CUSTOM: "News and offers",
    },
    "fr": {
        EmailKind.WELCOME: "Bienvenue",
        EmailKind.POINTS_EARNED: "Points gagnés",
        EmailKind.POINTS_ADDED: "Points ajoutés",
        EmailKind.POINTS_REMOVED: "Points retirés",
        EmailKind.REWARD_REDEEMED: "Vos récompenses et bons",
        EmailKind.POINTS_EXPIRING: "Points bientôt expirés",
        EmailKind.POINTS_REMINDER: "Relevé de points",
        EmailKind.REWARD_WITHIN_REACH: "Récompenses à portée",
        EmailKind.TIER_UPGRADED: "Montées de niveau",
        EmailKind.TIER_DOWNGRADED: "Baisses de niveau",
        EmailKind.TIER_AT_RISK: "Rappels de niveau",
        EmailKind.BIRTHDAY: "Vœux d'anniversaire",
        EmailKind.REFERRAL_REWARDED: "Récompenses de parrainage",
        EmailKind.CARD_CLAIMED: "Carte activée",
        EmailKind.LOGIN_LINK: "Liens de connexion",
        EmailKind.DELETION_CONFIRMED: "Suppression des données confirmée",
        EmailKind.DELETION_DECLINED: "Suppression des données refusée",
        EmailKind.CUSTOM: "Actualités et offres",
    },
}


def words(language: str) -> dict[str, str]:
    return WORDS.get(language, WORDS["en"])


def kind_name(kind: str, language: str) -> str:
    names = KIND_NAMES.get(language, KIND_NAMES["en"])
    return names.get(kind) or KIND_NAMES["en"].get(kind) or EmailKind(kind).label
