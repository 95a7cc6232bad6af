"""Admin of member emails' content (docs/emails.md, "Templates and branding"): a program's email
settings, the overview of its emails, and the template editor with a live preview.

- **Overview** (`/admin/notifications/emailtemplate/program/<id>/`): every kind, on or off,
  marketing or not, default or customised per language, with edit links.
- **Editor** (`.../program/<id>/<kind>/<language>/`): subject, HTML and text body, prefilled
  with the shipped default (an unchanged part stays the default, so later improvements of the
  defaults reach it); the kind's variables beside it; a live preview (htmx posts the form to
  the preview view, which renders through `emails.message_render` with `email_samples` for the
  sample member or a real member of the program, shown in a sandboxed iframe); "send me a
  test" to the staff user's address; "reset to default". Saving runs the sandbox's check
  (`email_render.template_problems`): a problem is a form error naming the variable.
- Writes go through `notifications.emails` (`email_template_save`, `email_template_reset`,
  `email_settings_save`). Every page needs `notifications.change_emailtemplate` (the overview:
  view) or, for settings, the email settings' own permissions.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from loyalty.admin import ProgramScopedAdmin
from loyalty.models import Member, Program
from loyalty.staff_scope import programs_for

from . import email_context, email_kinds, email_render, email_samples, emails
from .models import EmailSettings, EmailTemplate

PARTS = ("subject", "html_body", "text_body")
LANGUAGE_NAMES = dict(EmailTemplate._meta.get_field("language").choices)


def kind_label(kind: str) -> str:
    return email_kinds.EmailKind(kind).label


# --------------------------------------------------------------------------------------------
# Email settings


def _kind_choice_label(kind: str) -> str:
    info = email_kinds.KINDS[kind]
    notes = []
    if info.marketing:
        notes.append("marketing: only members who consented")
    if info.to == "admin":
        notes.append("to the admin address")
    if kind in email_kinds.ALWAYS_ON:
        notes.append("always on")
    return format_html(
        '<strong>{}</strong>: {} <span class="kind-note">{}</span>',
        kind_label(kind),
        info.description,
        f"({'; '.join(notes)})" if notes else "",
    )


class EmailSettingsForm(forms.ModelForm):
    enabled_kinds = forms.MultipleChoiceField(
        choices=[(kind, _kind_choice_label(kind)) for kind in email_kinds.KINDS],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="Emails sent",
        help_text="Ticked kinds are sent. Marketing kinds go only to members who consented to marketing emails.",
    )

    class Meta:
        model = EmailSettings
        fields = ("program", *emails.SETTINGS_FIELDS)

    def clean_enabled_kinds(self) -> list[str]:
        return sorted(set(self.cleaned_data["enabled_kinds"]) | email_kinds.ALWAYS_ON)


@admin.register(EmailSettings)
class EmailSettingsAdmin(ProgramScopedAdmin):
    form = EmailSettingsForm
    list_display = ("program", "sender", "reminder_frequency", "expiry_warning_days", "kinds_on", "emails_link")
    list_select_related = ("program",)
    fieldsets = (
        (None, {"fields": ("program",)}),
        ("Which emails", {"fields": ("enabled_kinds", "welcome_on_import")}),
        ("Sender", {"fields": ("from_name", "from_email", "reply_to", "admin_email", "postal_address")}),
        ("Timing", {"fields": ("expiry_warning_days", "reminder_frequency", "tier_at_risk_days")}),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return ("program",) if obj else ()

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("enabled_kinds", email_kinds.default_enabled_kinds())
        return initial

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # switch kinds off instead; a program always has (default) settings

    @admin.display(description="from")
    def sender(self, obj: EmailSettings) -> str:
        return f"{obj.from_name or obj.program.name} <{obj.from_email or 'default address'}>"

    @admin.display(description="kinds on")
    def kinds_on(self, obj: EmailSettings) -> str:
        return f"{len(set(obj.enabled_kinds) | email_kinds.ALWAYS_ON)} of {len(email_kinds.KINDS)}"

    @admin.display(description="emails")
    def emails_link(self, obj: EmailSettings) -> str:
        url = reverse("admin:notifications_emailtemplate_overview", args=[obj.program_id])
        return format_html('<a href="{}">Templates and previews</a>', url)

    def save_model(self, request: HttpRequest, obj: EmailSettings, form: Any, change: bool) -> None:
        program = obj.program if change else form.cleaned_data["program"]
        fields = {name: form.cleaned_data[name] for name in emails.SETTINGS_FIELDS if name in form.cleaned_data}
        saved = emails.email_settings_save(program=program, **fields)
        obj.pk = saved.pk

    def response_post_save_change(self, request: HttpRequest, obj: EmailSettings) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:notifications_emailtemplate_overview", args=[obj.program_id]))

    response_post_save_add = response_post_save_change


# --------------------------------------------------------------------------------------------
# The template editor


class TemplateEditorForm(forms.Form):
    subject = forms.CharField(
        max_length=300, required=False, widget=forms.TextInput(attrs={"class": "vLargeTextField", "size": 80})
    )
    html_body = forms.CharField(
        required=False,
        label="HTML body",
        widget=forms.Textarea(attrs={"rows": 22, "spellcheck": "false", "class": "email-code"}),
        help_text="The message's content; the branded layout (logo or name, footer with the unsubscribe "
        'link) wraps it. Classes: "big" (a large number), "code" (a coupon code), "button" (a link as a '
        'button), "muted", "center", "box"; table class "lines" with td class "num".',
    )
    text_body = forms.CharField(
        required=False,
        label="Text body",
        widget=forms.Textarea(attrs={"rows": 12, "spellcheck": "false", "class": "email-code"}),
        help_text="The plain-text version (some mail apps show only this). The footer is added.",
    )
    preview_member = forms.CharField(
        required=False,
        label="Preview for",
        widget=forms.TextInput(attrs={"placeholder": "a member's id or email (empty: a sample member)", "size": 40}),
    )

    def __init__(self, *args: Any, kind: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        for name in PARTS:
            for problem in email_render.template_problems(cleaned.get(name) or "", self.kind):
                self.add_error(name, short_problem(problem))
        return cleaned


def short_problem(problem: str) -> str:
    """The sandbox's words without the list of every variable (the editor lists them beside)."""
    head, found, _offered = problem.partition(" This email can use: ")
    return f"{head} See the variables of this email below the editor." if found else problem


def member_lookup(program: Program, text: str) -> Member | None:
    """A member of `program` by id or email address (None: not found or nothing asked)."""
    text = text.strip()
    if not text:
        return None
    members = Member.objects.filter(program=program)
    if text.isdigit():
        return members.filter(pk=int(text)).first()
    return members.filter(email__iexact=text).order_by("pk").first()


def _filter(field: str) -> str:
    """Dates print best through |date (the email's language and date format)."""
    return "|date" if field.endswith(email_context.DATE_KEYS_SUFFIXES) else ""


def _variables(kind: str) -> list[dict[str, Any]]:
    """The kind's variables as the editor lists them: `{{ name.field }}` or a loop."""
    rows = []
    for name, fields in email_kinds.variables_for(kind).items():
        item_fields = email_kinds.LIST_FIELDS.get(name)
        if item_fields:
            item = name[:-1] if name.endswith("s") else "item"
            rows.append(
                {
                    "name": name,
                    "list": True,
                    "examples": [
                        f"{{% for {item} in {name} %}}",
                        *(f"{{{{ {item}.{f}{_filter(f)} }}}}" for f in item_fields),
                    ],
                    "common": name in email_kinds.COMMON,
                }
            )
        elif fields:
            rows.append(
                {
                    "name": name,
                    "examples": [f"{{{{ {name}.{f}{_filter(f)} }}}}" for f in fields],
                    "common": name in email_kinds.COMMON,
                }
            )
        else:
            rows.append({"name": name, "examples": [f"{{{{ {name}{_filter(name)} }}}}"], "common": False})
    return rows


class EmailTemplateAdmin(ProgramScopedAdmin):
    """The list of customised templates; adding and changing happen in the editor."""

    list_display = ("program", "kind", "language", "customised_parts", "updated_at", "updated_by", "edit_link")
    list_filter = ("program", "kind", "language")
    list_select_related = ("program", "updated_by")
    change_list_template = "admin/notifications/emailtemplate/change_list.html"

    @admin.display(description="customised")
    def customised_parts(self, obj: EmailTemplate) -> str:
        names = {"subject": "subject", "html_body": "HTML", "text_body": "text"}
        return ", ".join(label for part, label in names.items() if getattr(obj, part)) or "-"

    @admin.display(description="")
    def edit_link(self, obj: EmailTemplate) -> str:
        return format_html(
            '<a href="{}">Edit with preview</a>', self._editor_url(obj.program_id, obj.kind, obj.language)
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # the editor creates rows (the overview links to it)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("program/<int:program_id>/", view(self.overview_view), name="notifications_emailtemplate_overview"),
            path(
                "program/<int:program_id>/<str:kind>/<str:language>/",
                view(self.editor_view),
                name="notifications_emailtemplate_editor",
            ),
            path(
                "program/<int:program_id>/<str:kind>/<str:language>/preview/",
                view(self.preview_view),
                name="notifications_emailtemplate_preview",
            ),
            *super().get_urls(),
        ]

    def _editor_url(self, program_id: int, kind: str, language: str) -> str:
        return reverse("admin:notifications_emailtemplate_editor", args=[program_id, kind, language])

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        row = self.get_object(request, object_id) if object_id.isdigit() else None
        if row is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        return HttpResponseRedirect(self._editor_url(row.program_id, row.kind, row.language))

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        programs = programs_for(request.user).order_by("name").values("pk", "name")[:200]
        return super().changelist_view(request, {**(extra_context or {}), "programs": programs})

    # -- pages ---------------------------------------------------------------------------

    def _require(self, request: HttpRequest, *, change: bool) -> None:
        allowed = self.has_change_permission(request) if change else self.has_view_or_change_permission(request)
        if not allowed:
            raise PermissionDenied

    def _context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        return {**self.admin_site.each_context(request), "opts": self.opts, **extra}

    def overview_view(self, request: HttpRequest, program_id: int) -> HttpResponse:
        self._require(request, change=False)
        program = get_object_or_404(programs_for(request.user), pk=program_id)
        settings_row = EmailSettings.objects.filter(program=program).first()
        enabled = settings_row or EmailSettings(program=program)
        customised: dict[tuple[str, str], EmailTemplate] = {
            (row.kind, row.language): row for row in EmailTemplate.objects.filter(program=program)
        }
        rows = []
        for kind, info in email_kinds.KINDS.items():
            rows.append(
                {
                    "kind": kind,
                    "label": kind_label(kind),
                    "info": info,
                    "on": enabled.sends(kind),
                    "always_on": kind in email_kinds.ALWAYS_ON,
                    "languages": [
                        {
                            "code": code,
                            "name": LANGUAGE_NAMES.get(code, code),
                            "customised": (kind, code) in customised,
                            "url": self._editor_url(program.pk, kind, code),
                        }
                        for code in email_render.LANGUAGE_CODES
                    ],
                }
            )
        if settings_row is not None:
            settings_url = reverse("admin:notifications_emailsettings_change", args=[settings_row.pk])
        else:
            settings_url = reverse("admin:notifications_emailsettings_add") + f"?program={program.pk}"
        context = self._context(
            request,
            title=f"Emails of {program.name}",
            program=program,
            rows=rows,
            settings_row=enabled,
            settings_saved=settings_row is not None,
            settings_url=settings_url,
            can_change=self.has_change_permission(request),
        )
        return TemplateResponse(request, "admin/notifications/emailtemplate/overview.html", context)

    def _target(self, request: HttpRequest, program_id: int, kind: str, language: str) -> Program:
        if kind not in email_kinds.KINDS or language not in email_render.LANGUAGE_CODES:
            raise Http404("No such email.")
        return get_object_or_404(programs_for(request.user), pk=program_id)

    def editor_view(self, request: HttpRequest, program_id: int, kind: str, language: str) -> HttpResponse:
        self._require(request, change=True)
        program = self._target(request, program_id, kind, language)
        default = email_render.default_parts(kind, language)
        row = EmailTemplate.objects.filter(program=program, kind=kind, language=language).first()
        url = self._editor_url(program.pk, kind, language)
        if request.method == "POST" and "_reset" in request.POST:
            if emails.email_template_reset(program=program, kind=kind, language=language):
                self.message_user(request, "Back to the shipped default.", messages.SUCCESS)
            return HttpResponseRedirect(url)
        if request.method == "POST":
            form = TemplateEditorForm(request.POST, kind=kind)
            if form.is_valid() and "_test" in request.POST:
                self._send_test(request, program, kind, language, form, default)
            elif form.is_valid():
                try:
                    emails.email_template_save(
                        program=program,
                        kind=kind,
                        language=language,
                        subject=form.cleaned_data["subject"],
                        html_body=form.cleaned_data["html_body"],
                        text_body=form.cleaned_data["text_body"],
                        user=request.user,
                    )
                except emails.TemplateInvalid as exc:  # the form ran the same check; a race with a deploy
                    for part, found in exc.problems.items():
                        for problem in found:
                            form.add_error(part, problem)
                else:
                    self.message_user(request, f"{kind_label(kind)} ({language}) saved.", messages.SUCCESS)
                    target = url + (
                        "?" + urlencode({"member": form.cleaned_data["preview_member"]})
                        if form.cleaned_data["preview_member"]
                        else ""
                    )
                    return HttpResponseRedirect(target)
        else:
            form = TemplateEditorForm(
                kind=kind,
                initial={
                    "subject": (row.subject if row else "") or default.subject,
                    "html_body": (row.html_body if row else "") or default.html_body,
                    "text_body": (row.text_body if row else "") or default.text_body,
                    "preview_member": request.GET.get("member", ""),
                },
            )
        settings_row = emails.program_settings(program.pk)
        context = self._context(
            request,
            title=f"{kind_label(kind)} email ({LANGUAGE_NAMES.get(language, language)})",
            program=program,
            kind=kind,
            info=email_kinds.KINDS[kind],
            language=language,
            languages=[
                {"code": code, "name": LANGUAGE_NAMES.get(code, code), "url": self._editor_url(program.pk, kind, code)}
                for code in email_render.LANGUAGE_CODES
            ],
            form=form,
            row=row,
            enabled=settings_row.sends(kind),
            variables=_variables(kind),
            preview_url=reverse("admin:notifications_emailtemplate_preview", args=[program.pk, kind, language]),
            overview_url=reverse("admin:notifications_emailtemplate_overview", args=[program.pk]),
            staff_email=request.user.email,
            preview=self._preview(program, kind, language, form, default),
        )
        return TemplateResponse(request, "admin/notifications/emailtemplate/editor.html", context)

    def preview_view(self, request: HttpRequest, program_id: int, kind: str, language: str) -> HttpResponse:
        """The preview fragment for the editor's current (unsaved) text: htmx posts the form here."""
        self._require(request, change=True)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        program = self._target(request, program_id, kind, language)
        form = TemplateEditorForm(request.POST, kind=kind)
        form.is_valid()
        preview = self._preview(program, kind, language, form, email_render.default_parts(kind, language))
        return TemplateResponse(request, "admin/notifications/emailtemplate/_preview.html", {"preview": preview})

    # -- rendering -----------------------------------------------------------------------

    def _parts(self, form: TemplateEditorForm, default: email_render.Parts) -> email_render.Parts:
        data = form.cleaned_data if hasattr(form, "cleaned_data") else {}
        if not form.is_bound:
            data = {name: form.initial.get(name, "") for name in PARTS}
        return email_render.Parts(
            subject=(data.get("subject") or "").strip() or default.subject,
            html_body=data.get("html_body") or default.html_body,
            text_body=data.get("text_body") or default.text_body,
        )

    def _preview_member(self, program: Program, form: TemplateEditorForm) -> tuple[Member, str]:
        asked = (form.data.get("preview_member") if form.is_bound else form.initial.get("preview_member")) or ""
        found = member_lookup(program, str(asked))
        if found is not None:
            return found, f"Shown for {found.first_name} {found.last_name} <{found.email}> (member {found.pk})."
        note = (
            "Shown for a sample member."
            if not str(asked).strip()
            else f"No member “{asked}” in this program: shown for a sample member."
        )
        return email_samples.sample_member(program), note

    def _preview(
        self, program: Program, kind: str, language: str, form: TemplateEditorForm, default: email_render.Parts
    ) -> dict[str, Any]:
        """What the preview shows: problems (the text is not rendered), or the rendering."""
        problems = [
            (form.fields[name].label or name.replace("_", " ").capitalize(), problem)
            for name in PARTS
            for problem in (form.errors.get(name) or [])
        ]
        if form.is_bound and problems:
            return {"problems": problems}
        member, note = self._preview_member(program, form)
        data = email_samples.sample_data(kind, language=language)
        try:
            rendered = emails.message_render(
                program=program,
                member=member,
                kind=kind,
                data=data,
                parts=self._parts(form, default),
                language=language,
                live_links=False,
            )
        except Exception as exc:  # a template that checks out but fails on the data: shown, never a 500
            return {"problems": [("Preview", f"{type(exc).__name__}: {exc}")]}
        return {"subject": rendered.subject, "html": rendered.html, "text": rendered.text, "note": note}

    def _send_test(
        self,
        request: HttpRequest,
        program: Program,
        kind: str,
        language: str,
        form: TemplateEditorForm,
        default: email_render.Parts,
    ) -> None:
        to = request.user.email
        if not to:
            self.message_user(request, "Your user has no email address: add one to receive tests.", messages.ERROR)
            return
        member, _note = self._preview_member(program, form)
        try:
            emails.send_test_email(
                program=program,
                kind=kind,
                to=to,
                member=member,
                data=email_samples.sample_data(kind, language=language),
                parts=self._parts(form, default),
                language=language,
            )
        except Exception as exc:  # the backend refused: say so on the page
            self.message_user(request, f"The test could not be sent: {type(exc).__name__}: {exc}", messages.ERROR)
            return
        self.message_user(request, f"Test sent to {to} (not saved yet).", messages.SUCCESS)


admin.site.register(EmailTemplate, EmailTemplateAdmin)
