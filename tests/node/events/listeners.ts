// Listeners and publishers as the course's services wrote them against @sgtickets/common@1.0.24,
// unchanged: the test compiles them against the original's declarations, then against ours.
import { Message, Stan } from 'node-nats-streaming';
import {
  ExpirationCompleteEvent,
  Listener,
  OrderCancelledEvent,
  OrderCreatedEvent,
  OrderStatus,
  PaymentCreatedEvent,
  Publisher,
  Subjects,
  TicketCreatedEvent,
  TicketUpdatedEvent,
} from '@sgtickets/common';

const queueGroupName = 'orders-service';

export class TicketCreatedListener extends Listener<TicketCreatedEvent> {
  subject: Subjects.TicketCreated = Subjects.TicketCreated;
  queueGroupName = queueGroupName;

  async onMessage(data: TicketCreatedEvent['data'], msg: Message) {
    const { id, title, price, userId, version } = data;
    const record: { id: string; title: string; price: number; userId: string; version: number } = {
      id,
      title,
      price,
      userId,
      version,
    };
    console.log(record);
    msg.ack();
  }
}

export class TicketUpdatedListener extends Listener<TicketUpdatedEvent> {
  subject: Subjects.TicketUpdated = Subjects.TicketUpdated;
  queueGroupName = queueGroupName;

  async onMessage(data: TicketUpdatedEvent['data'], msg: Message) {
    const reservedBy: string | undefined = data.orderId;
    const previous: number = data.version - 1;
    console.log(reservedBy, previous, data.title.toUpperCase(), data.price.toFixed(2));
    msg.ack();
  }
}

export class OrderCreatedListener extends Listener<OrderCreatedEvent> {
  subject: Subjects.OrderCreated = Subjects.OrderCreated;
  queueGroupName = 'expiration-service';

  async onMessage(data: OrderCreatedEvent['data'], msg: Message) {
    const delay = new Date(data.expiresAt).getTime() - new Date().getTime();
    const waiting: boolean = data.status === OrderStatus.Created || data.status === OrderStatus.AwaitingPayment;
    console.log(delay, waiting, data.ticket.id, data.ticket.price * 100, data.userId);
    msg.ack();
  }
}

export class OrderCancelledListener extends Listener<OrderCancelledEvent> {
  subject: Subjects.OrderCancelled = Subjects.OrderCancelled;
  queueGroupName = 'payments-service';

  async onMessage(data: OrderCancelledEvent['data'], msg: Message) {
    console.log(data.id, data.version, data.ticket.id, OrderStatus.Cancelled);
    msg.ack();
  }
}

export class ExpirationCompleteListener extends Listener<ExpirationCompleteEvent> {
  subject: Subjects.ExpirationComplete = Subjects.ExpirationComplete;
  queueGroupName = queueGroupName;

  async onMessage(data: ExpirationCompleteEvent['data'], msg: Message) {
    console.log(data.orderId);
    msg.ack();
  }
}

export class PaymentCreatedListener extends Listener<PaymentCreatedEvent> {
  subject: Subjects.PaymentCreated = Subjects.PaymentCreated;
  queueGroupName = queueGroupName;

  async onMessage(data: PaymentCreatedEvent['data'], msg: Message) {
    console.log(data.id, data.orderId, data.stripeId);
    msg.ack();
  }
}

export class TicketCreatedPublisher extends Publisher<TicketCreatedEvent> {
  subject: Subjects.TicketCreated = Subjects.TicketCreated;
}

export class TicketUpdatedPublisher extends Publisher<TicketUpdatedEvent> {
  subject: Subjects.TicketUpdated = Subjects.TicketUpdated;
}

export class OrderCreatedPublisher extends Publisher<OrderCreatedEvent> {
  subject: Subjects.OrderCreated = Subjects.OrderCreated;
}

export class OrderCancelledPublisher extends Publisher<OrderCancelledEvent> {
  subject: Subjects.OrderCancelled = Subjects.OrderCancelled;
}

export class ExpirationCompletePublisher extends Publisher<ExpirationCompleteEvent> {
  subject: Subjects.ExpirationComplete = Subjects.ExpirationComplete;
}

export class PaymentCreatedPublisher extends Publisher<PaymentCreatedEvent> {
  subject: Subjects.PaymentCreated = Subjects.PaymentCreated;
}

export async function publishAll(client: Stan) {
  await new TicketCreatedPublisher(client).publish({ id: 't1', version: 0, title: 'concert', price: 20, userId: 'u1' });
  await new TicketUpdatedPublisher(client).publish({
    id: 't1',
    version: 1,
    title: 'concert',
    price: 20,
    userId: 'u1',
    orderId: undefined,
  });
  await new OrderCreatedPublisher(client).publish({
    id: 'o1',
    version: 0,
    status: OrderStatus.Created,
    userId: 'u2',
    expiresAt: new Date().toISOString(),
    ticket: { id: 't1', price: 20 },
  });
  await new OrderCancelledPublisher(client).publish({ id: 'o1', version: 1, ticket: { id: 't1' } });
  await new ExpirationCompletePublisher(client).publish({ orderId: 'o1' });
  await new PaymentCreatedPublisher(client).publish({ id: 'p1', orderId: 'o1', stripeId: 'ch_1' });
}
