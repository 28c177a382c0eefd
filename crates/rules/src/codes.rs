//! Closed vocabularies of the SPEC (routes, tumour sites, tests, ...) as enums
//! whose wire form is a stable snake_case code.
//!
//! Every code enum is declared through one macro so that parsing, printing and
//! serde agree by construction, and error messages can list the accepted codes.

/// Declares an enum whose variants map one-to-one to stable string codes.
macro_rules! code_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $code:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Its place in [`Self::ALL`] (for compact in-memory forms, never
            /// for anything stored for good: the wire code is the stable form).
            pub fn index(self) -> u8 {
                self as u8
            }

            /// The value at `index` in [`Self::ALL`].
            pub fn from_index(index: u8) -> Option<Self> {
                Self::ALL.get(index as usize).copied()
            }

            /// The stable wire code.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $code),+ }
            }

            /// Parses a wire code; `None` for anything else.
            pub fn parse(code: &str) -> Option<Self> {
                match code { $($code => Some($name::$variant),)+ _ => None }
            }

            /// The accepted codes, for error messages.
            pub fn expected() -> String {
                $crate::codes::expected_list(Self::ALL.iter().map(|v| v.as_str()))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let code = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::parse(&code).ok_or_else(|| {
                    serde::de::Error::custom(format!("must be one of {}", $name::expected()))
                })
            }
        }
    };
}
pub(crate) use code_enum;

pub(crate) fn expected_list<'a>(codes: impl Iterator<Item = &'a str>) -> String {
    codes
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

code_enum!(
    /// How the pathway started (SPEC 2.1); decides which clocks it has.
    Route {
        UrgentSuspectedCancer = "urgent_suspected_cancer",
        BreastSymptomatic = "breast_symptomatic",
        Screening = "screening",
        Other = "other",
        Recurrence = "recurrence",
    }
);

impl Route {
    /// Whether the route has an FDS clock and starts the 62-day clock at referral.
    pub fn is_cancer_route(self) -> bool {
        matches!(
            self,
            Route::UrgentSuspectedCancer | Route::BreastSymptomatic | Route::Screening
        )
    }

    /// Whether the route has a 62-day clock at all (a recurrence has only
    /// the 31-day standard, SPEC 2.1).
    pub fn has_d62(self) -> bool {
        self != Route::Recurrence
    }
}

code_enum!(
    /// Suspected cancer type (SPEC 2.5).
    TumourSite {
        Breast = "breast",
        Lung = "lung",
        LowerGi = "lower_gi",
        UpperGi = "upper_gi",
        Gynaecological = "gynaecological",
        HeadAndNeck = "head_and_neck",
        Prostate = "prostate",
        UrologicalOther = "urological_other",
        Testicular = "testicular",
        Skin = "skin",
        Haematological = "haematological",
        AcuteLeukaemia = "acute_leukaemia",
        BrainCns = "brain_cns",
        Children = "children",
        Sarcoma = "sarcoma",
        NonSpecificSymptoms = "non_specific_symptoms",
        Other = "other",
    }
);

code_enum!(
    /// National screening programme of a `screening` referral.
    ScreeningProgramme { Bowel = "bowel", Breast = "breast", Cervical = "cervical", Lung = "lung" }
);

code_enum!(
    /// How far the referral's NHS number was traced (checked against the
    /// national register), as the referring system knows it: the NHS Data
    /// Dictionary's NHS NUMBER STATUS INDICATOR CODE, without `07` (number
    /// not present), since a referral always carries a number. The national
    /// code of each is in [`crate::cwt::nhs_number_status`].
    NhsNumberStatus {
        Verified = "verified",
        NotTraced = "not_traced",
        TraceRequired = "trace_required",
        TraceNoMatch = "trace_no_match",
        TraceConflict = "trace_conflict",
        TraceInProgress = "trace_in_progress",
        TracePostponed = "trace_postponed",
    }
);

code_enum!(
    /// Outcome of clinical triage.
    TriageOutcome { StraightToTest = "straight_to_test", Outpatient = "outpatient", Discharged = "discharged" }
);

code_enum!(
    /// Kind of outpatient appointment.
    AppointmentKind { FirstOutpatient = "first_outpatient", FollowUp = "follow_up", OneStop = "one_stop" }
);

impl AppointmentKind {
    /// First-seen appointments: a DNA of one adjusts the clocks (SPEC 2.3).
    pub fn is_first_seen(self) -> bool {
        matches!(
            self,
            AppointmentKind::FirstOutpatient | AppointmentKind::OneStop
        )
    }
}

code_enum!(
    /// Why an appointment was missed.
    MissedReason { DidNotAttend = "did_not_attend", PatientCancelled = "patient_cancelled" }
);

code_enum!(
    /// Diagnostic tests (SPEC 2.7).
    DiagnosticTest {
        Mri = "mri",
        Mpmri = "mpmri",
        Ct = "ct",
        CtColonography = "ct_colonography",
        Colonoscopy = "colonoscopy",
        FlexibleSigmoidoscopy = "flexible_sigmoidoscopy",
        EndoscopyOgd = "endoscopy_ogd",
        Ultrasound = "ultrasound",
        Mammogram = "mammogram",
        Biopsy = "biopsy",
        ProstateBiopsy = "prostate_biopsy",
        Bronchoscopy = "bronchoscopy",
        Ebus = "ebus",
        PetCt = "pet_ct",
        Dermatoscopy = "dermatoscopy",
        Teledermatology = "teledermatology",
        Hysteroscopy = "hysteroscopy",
        Nasendoscopy = "nasendoscopy",
        BloodTest = "blood_test",
        Other = "other",
    }
);

code_enum!(
    /// What the patient was told.
    DiagnosisOutcome { CancerDiagnosed = "cancer_diagnosed", CancerRuledOut = "cancer_ruled_out" }
);

code_enum!(
    /// How the patient was told.
    CommunicationMethod {
        FaceToFace = "face_to_face",
        Telephone = "telephone",
        Video = "video",
        Letter = "letter",
        Other = "other",
    }
);

code_enum!(
    /// Why a pathway left the FDS.
    ExclusionReason { PatientChoice = "patient_choice", ClinicalReason = "clinical_reason", Other = "other" }
);

code_enum!(
    /// Treatment modalities (SPEC 2.8).
    Modality {
        Surgery = "surgery",
        AnticancerDrug = "anticancer_drug",
        Radiotherapy = "radiotherapy",
        Chemoradiotherapy = "chemoradiotherapy",
        ActiveMonitoring = "active_monitoring",
        PalliativeCare = "palliative_care",
        Other = "other",
    }
);

code_enum!(
    /// Which treatment of the pathway a decision or a treatment is for (SPEC 2.12).
    TreatmentKind { First = "first", Subsequent = "subsequent" }
);

code_enum!(
    /// How the patient attended an appointment (schema version 2).
    AttendanceMode { FaceToFace = "face_to_face", Virtual = "virtual" }
);

code_enum!(
    /// Why a treatment period starts when it does (SPEC 4.2).
    PeriodStartReason {
        DecisionToTreat = "decision_to_treat",
        EarliestClinicallyAppropriateDate = "earliest_clinically_appropriate_date",
    }
);

code_enum!(
    /// Care setting of a declined treatment offer, or of a treatment.
    TreatmentSetting { Admitted = "admitted", NonAdmitted = "non_admitted" }
);

code_enum!(
    /// Why a pathway was closed.
    CloseReason {
        CancerRuledOut = "cancer_ruled_out",
        PatientDeclinedAllTreatment = "patient_declined_all_treatment",
        PatientDied = "patient_died",
        ReferralWithdrawn = "referral_withdrawn",
        Downgraded = "downgraded",
        Other = "other",
    }
);

code_enum!(
    /// FIT result band (SPEC 2.6).
    FitBand { Below10 = "below_10", From10To100 = "10_to_100", Above100 = "above_100", NotAppropriate = "not_appropriate", None = "none" }
);

impl FitBand {
    /// Band of a FIT value in µg Hb/g.
    pub fn of_value(value: f64) -> FitBand {
        if value < 10.0 {
            FitBand::Below10
        } else if value <= 100.0 {
            FitBand::From10To100
        } else {
            FitBand::Above100
        }
    }

    /// A result of a value (not `not_appropriate`, not `none`).
    pub fn has_value(self) -> bool {
        matches!(
            self,
            FitBand::Below10 | FitBand::From10To100 | FitBand::Above100
        )
    }
}

code_enum!(
    /// The three waiting-time standards.
    ClockKind { Fds = "fds", D31 = "d31", D62 = "d62" }
);

code_enum!(
    /// Status of one clock (SPEC 4.2).
    ClockStatus {
        NotApplicable = "not_applicable",
        NotStarted = "not_started",
        Open = "open",
        OpenBreached = "open_breached",
        Met = "met",
        Breached = "breached",
        Excluded = "excluded",
        Closed = "closed",
    }
);

impl ClockStatus {
    /// Running clocks keep a pathway on the PTL.
    pub fn is_running(self) -> bool {
        matches!(self, ClockStatus::Open | ClockStatus::OpenBreached)
    }
}

code_enum!(
    /// Why a clock stopped.
    StopReason {
        CancerDiagnosed = "cancer_diagnosed",
        CancerRuledOut = "cancer_ruled_out",
        DecisionToTreat = "decision_to_treat",
        TreatmentStarted = "treatment_started",
        PathwayClosed = "pathway_closed",
    }
);

code_enum!(
    /// Status of a pathway as a whole (SPEC 4.2).
    PathwayStatus { Open = "open", RuledOut = "ruled_out", Treated = "treated", Closed = "closed" }
);

code_enum!(
    /// Status of one BPTP milestone (SPEC 2.9).
    MilestoneStatus {
        Met = "met",
        Missed = "missed",
        Overdue = "overdue",
        Pending = "pending",
        NotApplicable = "not_applicable",
    }
);

impl MilestoneStatus {
    /// Whether the milestone is still to be decided (pending, or overdue
    /// and not met yet): its status moves with the date it is seen on.
    pub fn is_undecided(self) -> bool {
        matches!(self, MilestoneStatus::Pending | MilestoneStatus::Overdue)
    }
}
