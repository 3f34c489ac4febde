//! What the assistant knows about the centre and how it answers without a model: the system
//! prompt given to the AI providers, and the built-in responder, a deterministic rule-based
//! answerer over the business settings (greetings, opening hours, prices, address, "talk to
//! a person"), used when no provider is configured, every provider failed or the daily
//! budget is spent. Answers are in Brazilian Portuguese, the centre's customers' language.

use crate::config::EdgeConfig;

/// The business settings (`BUSINESS_*`), as text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Business {
    /// `BUSINESS_NAME` (a neutral name when unset, development only).
    pub name: String,
    /// `BUSINESS_PHONE`.
    pub phone: Option<String>,
    /// `BUSINESS_EMAIL`.
    pub email: Option<String>,
    /// `BUSINESS_ADDRESS`.
    pub address: Option<String>,
    /// `BUSINESS_HOURS`.
    pub hours: Option<String>,
    /// `BUSINESS_PRICES`.
    pub prices: Option<String>,
    /// `BUSINESS_TONE`.
    pub tone: String,
}

impl Business {
    /// From the validated configuration.
    pub fn from_config(cfg: &EdgeConfig) -> Self {
        let text = |n: &str| cfg.text(n).map(str::to_owned);
        Self {
            name: text("BUSINESS_NAME").unwrap_or_else(|| "o centro".into()),
            phone: text("BUSINESS_PHONE"),
            email: text("BUSINESS_EMAIL"),
            address: text("BUSINESS_ADDRESS"),
            hours: text("BUSINESS_HOURS"),
            prices: text("BUSINESS_PRICES"),
            tone: text("BUSINESS_TONE").unwrap_or_else(|| "warm, concise and professional".into()),
        }
    }

    fn contact_line(&self) -> Option<String> {
        match (&self.phone, &self.email) {
            (Some(p), Some(e)) => Some(format!("telefone {p} ou e-mail {e}")),
            (Some(p), None) => Some(format!("telefone {p}")),
            (None, Some(e)) => Some(format!("e-mail {e}")),
            (None, None) => None,
        }
    }
}

/// The system prompt: who the assistant is, how it sounds, and the facts it may state.
pub fn system_prompt(b: &Business) -> String {
    let mut p = format!(
        "You are the WhatsApp assistant of {}, a tutoring centre. Parents and students write to \
         you. Answer in the customer's language (usually Brazilian Portuguese), in a {} tone, in \
         at most a few short sentences. Only state facts listed below; if you do not know, say \
         a person from the team will reply. Never invent prices or times. If the customer asks \
         for a person, say a team member will take over.\n\nFacts:\n- Name: {}",
        b.name, b.tone, b.name
    );
    for (label, v) in [
        ("Opening hours", &b.hours),
        ("Prices", &b.prices),
        ("Address", &b.address),
        ("Phone", &b.phone),
        ("Email", &b.email),
    ] {
        if let Some(v) = v {
            p.push_str(&format!("\n- {label}: {v}"));
        }
    }
    p
}

/// What a message asks, as far as the rules can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Asks for a person: the assistant hands over and stays silent for a while.
    Human,
    /// Asks about prices.
    Prices,
    /// Asks about opening hours.
    Hours,
    /// Asks where the centre is.
    Address,
    /// Says hello.
    Greeting,
    /// Anything else.
    Other,
}

/// Lower case without Portuguese accents, words separated by single spaces.
fn fold(text: &str) -> String {
    let folded: String = text
        .to_lowercase()
        .chars()
        .map(|c| match c {
            'á' | 'à' | 'â' | 'ã' | 'ä' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'í' | 'ì' | 'î' | 'ï' => 'i',
            'ó' | 'ò' | 'ô' | 'õ' | 'ö' => 'o',
            'ú' | 'ù' | 'û' | 'ü' => 'u',
            'ç' => 'c',
            c if c.is_alphanumeric() => c,
            _ => ' ',
        })
        .collect();
    format!(
        " {} ",
        folded.split_whitespace().collect::<Vec<_>>().join(" ")
    )
}

/// Whole words or phrases, matched on the folded text.
const RULES: &[(Intent, &[&str])] = &[
    (
        Intent::Human,
        &[
            "atendente",
            "humano",
            "pessoa",
            "falar com alguem",
            "falar com voces",
            "falar com uma",
            "human",
            "person",
            "agent",
            "someone",
            "representative",
        ],
    ),
    (
        Intent::Prices,
        &[
            "preco",
            "precos",
            "valor",
            "valores",
            "quanto custa",
            "quanto e",
            "custa",
            "mensalidade",
            "price",
            "prices",
            "cost",
            "fee",
            "fees",
            "how much",
        ],
    ),
    (
        Intent::Hours,
        &[
            "horario",
            "horarios",
            "que horas",
            "abre",
            "abrem",
            "fecha",
            "fecham",
            "funcionamento",
            "funciona",
            "aberto",
            "hours",
            "open",
            "opening",
            "close",
        ],
    ),
    (
        Intent::Address,
        &[
            "endereco",
            "onde fica",
            "onde",
            "localizacao",
            "local",
            "chegar",
            "address",
            "where",
            "location",
        ],
    ),
    (
        Intent::Greeting,
        &[
            "oi",
            "ola",
            "bom dia",
            "boa tarde",
            "boa noite",
            "hello",
            "hi",
            "hey",
            "good morning",
            "good afternoon",
            "good evening",
        ],
    ),
];

/// The intent of `text` (first matching rule in the order of [`RULES`]).
pub fn intent(text: &str) -> Intent {
    let folded = fold(text);
    RULES
        .iter()
        .find(|(_, words)| words.iter().any(|w| folded.contains(&format!(" {w} "))))
        .map_or(Intent::Other, |(i, _)| *i)
}

/// The built-in answer to `intent`, from the business settings only. `handover_minutes` is
/// said to the customer when they ask for a person.
pub fn answer(intent: Intent, b: &Business) -> String {
    let contact = b
        .contact_line()
        .map(|c| format!(" Se preferir, fale conosco pelo {c}."))
        .unwrap_or_default();
    match intent {
        Intent::Human => format!(
            "Certo! Vou chamar uma pessoa da equipe do {} para continuar a conversa. Em breve alguém responde por aqui.",
            b.name
        ),
        Intent::Prices => match &b.prices {
            Some(p) => format!("Nossos valores: {p}.{contact}"),
            None => format!("Os valores dependem da turma e da frequência; a equipe do {} vai te passar os detalhes.{contact}", b.name),
        },
        Intent::Hours => match &b.hours {
            Some(h) => format!("Nosso horário de funcionamento: {h}.{contact}"),
            None => format!("A equipe do {} vai confirmar os horários para você.{contact}", b.name),
        },
        Intent::Address => match &b.address {
            Some(a) => format!("Estamos em {a}.{contact}"),
            None => format!("A equipe do {} vai te enviar o endereço.{contact}", b.name),
        },
        Intent::Greeting => format!(
            "Olá! Aqui é o assistente do {}. Posso ajudar com horários, valores e endereço, ou chamar uma pessoa da equipe.",
            b.name
        ),
        Intent::Other => format!(
            "Obrigado pela mensagem! Posso informar horários, valores e endereço do {}; para outros assuntos, uma pessoa da equipe vai responder.{contact}",
            b.name
        ),
    }
}

/// The one "please wait" a sender over the per-sender limit gets per window.
pub fn please_wait(b: &Business) -> String {
    format!(
        "Recebemos suas mensagens! Para responder com calma, aguarde um instante antes de enviar mais. A equipe do {} já foi avisada.",
        b.name
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn centre() -> Business {
        Business {
            name: "Centro Aprender".into(),
            phone: Some("+55 11 98765-4321".into()),
            email: None,
            address: Some("Rua das Flores, 123".into()),
            hours: Some("Mon-Fri 09:00-18:00".into()),
            prices: Some("Aula individual R$ 80/h".into()),
            tone: "warm".into(),
        }
    }

    #[test]
    fn intents_are_found_in_portuguese_and_english_by_whole_words() {
        for (text, want) in [
            ("Oi! Qual é o horário de funcionamento?", Intent::Hours),
            ("Quanto custa a mensalidade?", Intent::Prices),
            ("Onde fica o centro?", Intent::Address),
            ("Bom dia", Intent::Greeting),
            ("Quero falar com um atendente, por favor", Intent::Human),
            ("Can I talk to a person?", Intent::Human),
            ("What are your opening hours?", Intent::Hours),
            ("this thing", Intent::Other),
            ("Meu filho tem prova amanhã", Intent::Other),
        ] {
            assert_eq!(intent(text), want, "{text}");
        }
    }

    #[test]
    fn answers_state_only_configured_facts() {
        let b = centre();
        assert!(answer(Intent::Hours, &b).contains("Mon-Fri 09:00-18:00"));
        assert!(answer(Intent::Prices, &b).contains("R$ 80/h"));
        assert!(answer(Intent::Address, &b).contains("Rua das Flores"));
        assert!(answer(Intent::Greeting, &b).contains("Centro Aprender"));
        let bare = Business {
            prices: None,
            ..centre()
        };
        assert!(
            !answer(Intent::Prices, &bare).contains("R$"),
            "never invents a price"
        );
        assert_eq!(
            answer(Intent::Other, &b),
            answer(Intent::Other, &b),
            "deterministic"
        );
    }

    #[test]
    fn the_system_prompt_lists_the_business_facts_and_tone() {
        let p = system_prompt(&centre());
        for fact in [
            "Centro Aprender",
            "warm",
            "Mon-Fri 09:00-18:00",
            "R$ 80/h",
            "Rua das Flores",
        ] {
            assert!(p.contains(fact), "{fact}");
        }
        assert!(!p.contains("Email"), "unset facts are left out");
    }
}
